"""Files in and out: reading reference images and motion clips, writing videos and frames atomically, and which
files a run may read and write.

reader.py   reference images (EXIF, alpha, 16-bit, CMYK) and motion clips (videos and frame folders, exact rates)
writer.py   streaming atomic writers (mp4/webm/gif/PNG folder), side-by-side grids, pictures
files.py    file kinds by suffix, sidecar and grid paths, the up-front writability check"""
