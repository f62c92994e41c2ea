"""Network helpers below services and drivers (no Flask, no database): the one
outbound-fetch function every download goes through."""
