"""facecmp: face comparison, face-mask and expression models in PaddlePaddle.

    import facecmp
    result = facecmp.compare("a.jpg", "b.jpg")   # .same, .distance, .threshold, .metric, .faces
    emb = facecmp.embed(["a.jpg", "b.jpg"])      # .vectors (N x 512), .ok, .errors
    masks = facecmp.classify(["a.jpg"], task="mask")

Importing the package is cheap: the API loads on first use, and Paddle only when a
network runs (see facecmp.api).
"""

from facecmp.errors import FacecmpError, ImageError, ModelError, NoFaceError, NothingDoneError

__version__ = "0.1.0"

_API = ("load_model", "compare", "embed", "classify", "FaceModel", "Comparison", "Embeddings",
        "Classification", "FaceInfo", "analyze", "AnalyzedFace", "Gallery", "enroll", "identify",
        "Identification", "identify_video", "VideoResult")
__all__ = [*_API, "FacecmpError", "ImageError", "ModelError", "NoFaceError", "NothingDoneError"]


def __getattr__(name: str):
    if name in _API:
        from facecmp import api

        return getattr(api, name)
    raise AttributeError(f"module 'facecmp' has no attribute {name!r}")
