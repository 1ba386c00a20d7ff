"""AudioSet's post-processing of raw VGGish embeddings: PCA, clip to [-2, 2], 8-bit quantization.

Byte-compatible with the released features: like Google's Postprocessor, the quantization
scales to [0, 255] and truncates (astype uint8), it does not round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embed.params import VGGISH, VGGishParams
from homesound.errors import ModelSourceError

PCA_EIGEN_VECTORS = "pca_eigen_vectors"
PCA_MEANS = "pca_means"


@dataclass(frozen=True)
class PCAParams:
    eigen_vectors: np.ndarray  # [128, 128]
    means: np.ndarray  # [128, 1]

    @classmethod
    def load(cls, path: str) -> "PCAParams":
        try:
            with np.load(path) as params:
                eigen_vectors, means = params[PCA_EIGEN_VECTORS], params[PCA_MEANS]
        except FileNotFoundError:
            raise ModelSourceError(f"PCA parameters {path}: no such file") from None
        except KeyError as missing:
            raise ModelSourceError(
                f"PCA parameters {path}: missing {missing}; expected Google's vggish_pca_params.npz "
                f"with '{PCA_EIGEN_VECTORS}' and '{PCA_MEANS}'"
            ) from None
        except (ValueError, OSError) as error:
            raise ModelSourceError(f"PCA parameters {path}: not a readable .npz file ({error})") from None
        size = VGGISH.embedding_size
        if eigen_vectors.shape != (size, size) or means.reshape(-1).shape != (size,):
            raise ModelSourceError(
                f"PCA parameters {path}: shapes {eigen_vectors.shape} and {means.shape}, expected "
                f"({size}, {size}) and ({size}, 1)"
            )
        return cls(eigen_vectors, means.reshape(size, 1))


def postprocess(raw: np.ndarray, pca: PCAParams, params: VGGishParams = VGGISH) -> np.ndarray:
    """[N, 128] raw float embeddings -> [N, 128] uint8, exactly as AudioSet's released features."""
    projected = (pca.eigen_vectors @ (raw.T - pca.means)).T
    clipped = np.clip(projected, params.quantize_min, params.quantize_max)
    scaled = (clipped - params.quantize_min) * (255.0 / (params.quantize_max - params.quantize_min))
    return scaled.astype(np.uint8)

