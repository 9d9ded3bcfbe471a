"""zip_d2's version, in a module of its own so that modules which record it (the labels'
``info`` block) need not import the package's top level."""
__version__ = "0.1.0"
