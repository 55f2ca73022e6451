"""The dashboard's screens: the main view and its dialogs."""
