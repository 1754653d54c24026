"""facecmp: face comparison, face-mask and expression models in PaddlePaddle.

Importing the package is cheap: Paddle is imported only by the modules that run a network.
"""

__version__ = "0.1.0"
