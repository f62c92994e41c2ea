"""The console proxy process: websockify with Nubo's token plugin."""
