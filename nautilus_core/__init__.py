"""nautilus_core: the Service base, the action bus, and the commands every service shares."""
