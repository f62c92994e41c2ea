"""Bytes in and out through Nubo's own URLs (what CloudStack's secondary storage VM serves):
extracts (download URLs for templates, ISOs and volumes) and volume uploads (uploadVolume,
getUploadParamsForVolume)."""
