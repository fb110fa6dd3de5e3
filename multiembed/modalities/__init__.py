"""One module per modality; each registers itself with multiembed.registry when imported.

The registry imports every module here on first use, so a new modality is just a new file.
"""
