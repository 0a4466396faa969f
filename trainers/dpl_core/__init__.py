"""DPL's model code: architecture format, CLIP loading, prompted encoders, config keys.

Imports only torch, clip and yacs; the Dassl trainers live beside this package.
"""
