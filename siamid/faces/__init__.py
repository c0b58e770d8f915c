"""Faces: the second modality. Multi-channel face images (colour, depth, infrared), face
detection and the face preprocessing stages; towers, training, evaluation and export are the
fingerprint ones (``siamid.nets``, ``siamid.training``), chosen by ``[preprocess] modality``.
"""

from .channels import FACE_CHANNELS, channel_count, companions, load_face, normalise_depth

__all__ = ["FACE_CHANNELS", "channel_count", "companions", "load_face", "normalise_depth"]
