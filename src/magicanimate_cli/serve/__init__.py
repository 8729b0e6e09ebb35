"""`magicanimate serve`: the web page (Gradio) in front of the same job the command line runs.

settings      what the server is asked for (ServeSettings), checked
workspace     the server's one temporary folder: uploads, job folders, expiry and removal
limits        an upload checked as the command line checks it, copied under a name the server chooses
estimate      a job's work (windows, steps, frames, area) and the devices' measured speed: its expected time
jobqueue      the server's one queue: jobs in order, each session's own, a device each, cancelling
runner        the loaded models per device, one job's run on a thread of its own, progress and cancel
results       what a user receives: download names after the inputs and job, a sidecar without server paths
heap          freed heap memory handed back after each job, so a server left running stays its size
upload_field  the page's upload field (Gradio's, without its empty file per upload)
page          the Gradio page and its events (a page that goes away takes its jobs with it)
handlers      the functions behind its buttons: page values into jobs, every outcome into the status area
server        start and stop: workspace, demo assets, Gradio's environment, the sweeper

Only this package imports Gradio (the optional extra `[serve]`), and only when the command runs.
"""
