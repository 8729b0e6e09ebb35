

def test_fuse_long_smooths_too_and_a_checkpoint_resumes_only_with_the_same_smoothing(pose_standin, tiny_bundle,
                                                                                      tmp_path, capsys):
    video = encode_video(tmp_path / "walk.mp4", [np.kron(f, np.ones((2, 2, 1), np.uint8))[:, :128]
                                                 for f in red_walks(8, missing={3})], 25)
    reference = save_image(tmp_path / "ref.png", make_reference_image(128))
    common = [reference, video, "-o", tmp_path / "out" / "long.mp4", "--weights", tiny_bundle, "--size", "128",
              "--steps", "1", "--context-frames", "8", "--context-overlap", "2", "--seed", "3", "-q",
              "--device", "cpu", "--motion-from-video", "--pose-model", pose_standin["model"]]
    code, _, err = run(["fuse-long", *common, "--smooth", "--checkpoint", tmp_path / "run.ckpt"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "long.mp4.json").read_text())["motion_from_video"]
    assert record["people"]["filled_at"] == [[3, 3]]
    code, _, err = run(["fuse-long", *common, "--resume", tmp_path / "run.ckpt"], capsys)
    assert code == 1 and "smooth" in err
