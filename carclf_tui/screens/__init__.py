"""The dashboard's screens: the main one, help, and the quit question."""
