"""`lofi serve`: the local web app. `app` holds the routes, `jobs` a pipeline run and what the
page shows of it, `process` the one way pipeline work is started and stopped (its own process
group), `radio` the endless playlist, `takes` the runs kept with their files, `controls` what
the page may change, `events` the server-sent-event streams; `static/` is the page."""
