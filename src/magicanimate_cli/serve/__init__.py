"""`magicanimate serve`: the web page (Gradio) in front of the same job the command line runs.

settings   what the server is asked for (ServeSettings), checked
workspace  the server's one temporary folder: uploads, job folders, expiry and removal
limits     an upload checked as the command line checks it, copied under a name the server chooses
runner     the loaded models per device, the device pool, one job's run with progress and cancel
heap       freed heap memory handed back after each job, so a server left running stays its size
page       the Gradio page and its events
handlers   the functions behind its buttons: page values into jobs, failures into one line
server     start and stop: workspace, demo assets, Gradio's environment, the sweeper

Only this package imports Gradio (the optional extra `[serve]`), and only when the command runs.
"""
