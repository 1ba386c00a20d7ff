"""When a detector trained on AudioSet's released features may read a household archive's VGGish embeddings.

AudioSet's features (embedder id `audioset-release`) are Google's VGGish with its PCA, clipped
and quantized to 8 bits; an archive embedded with Google's VGGish checkpoint and the official
`vggish_pca_params.npz` is the same network, post-processing and numbers - but homesound cannot
know the release's weights, so the ids differ and every command refuses to mix them. The user
says they are compatible (`--accept-embedder audioset-release --official-pca FILE`), and
homesound checks what can be checked offline before accepting an archive embedder:
- it is VGGish, quantized like the release (uint8, the AudioSet post-processing);
- it was embedded with exactly the given PCA file (its recorded pca_sha256 is the file's);
- the file is Google's: 128 x 128 eigenvectors and 128 means, with the release's known
  signature (every eigenvector entry below 5 in magnitude except entry [127][65], 44.999, and
  mean 65 at -0.251, as reported publicly in tensorflow/models issue 5000).
The checkpoint's weights cannot be checked offline (no published digest); their sha256 is
recorded with the acceptance, in the model file and in the training run, so it can be audited.
YAMNet, VGGish with another PCA, or an unquantized VGGish are refused.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from homesound.errors import HomesoundError

AUDIOSET_RELEASE = "audioset-release"
STATEMENTS = (AUDIOSET_RELEASE,)
PCA_SIZE = 128
# Google's vggish_pca_params.npz, as far as it is publicly described: one outlier eigenvector entry.
OUTLIER_INDEX = (127, 65)
OUTLIER_VALUE = 44.999
OUTLIER_MEAN = -0.251
OTHER_ENTRIES_BELOW = 5.0
TOLERANCE = 0.001


class IncompatibleEmbedderError(HomesoundError):
    """The user's statement that two embedders are compatible does not hold up."""


def official_pca_evidence(path: str | Path) -> dict[str, Any]:
    """sha256 and the checks that make `path` Google's vggish_pca_params.npz; raises if it is not."""
    path = Path(path)
    try:
        content = path.read_bytes()
        with np.load(path) as params:
            vectors = np.asarray(params["pca_eigen_vectors"], dtype=np.float64)
            means = np.asarray(params["pca_means"], dtype=np.float64).reshape(-1)
    except (OSError, KeyError, ValueError) as error:
        raise IncompatibleEmbedderError(f"--official-pca {path}: not a readable vggish_pca_params.npz ({error})"
                                        ) from None
    problems = []
    if vectors.shape != (PCA_SIZE, PCA_SIZE) or means.shape != (PCA_SIZE,):
        problems.append(f"shapes {vectors.shape} and {means.shape}, not ({PCA_SIZE}, {PCA_SIZE}) and ({PCA_SIZE},)")
    else:
        others = np.abs(vectors).copy()
        others[OUTLIER_INDEX] = 0.0
        if abs(vectors[OUTLIER_INDEX] - OUTLIER_VALUE) > TOLERANCE:
            problems.append(f"eigenvector entry {list(OUTLIER_INDEX)} is {vectors[OUTLIER_INDEX]:.3f}, "
                            f"not {OUTLIER_VALUE}")
        if abs(means[OUTLIER_INDEX[1]] - OUTLIER_MEAN) > TOLERANCE:
            problems.append(f"mean {OUTLIER_INDEX[1]} is {means[OUTLIER_INDEX[1]]:.3f}, not {OUTLIER_MEAN}")
        if others.max() >= OTHER_ENTRIES_BELOW:
            problems.append(f"other eigenvector entries reach {others.max():.3f} (the official ones stay below "
                            f"{OTHER_ENTRIES_BELOW:g})")
    if problems:
        raise IncompatibleEmbedderError(
            f"--official-pca {path} is not Google's vggish_pca_params.npz: {'; '.join(problems)}; give the file "
            "from https://storage.googleapis.com/audioset/vggish_pca_params.npz that the archive was embedded with"
        )
    return {
        "file": str(path),
        "sha256": hashlib.sha256(content).hexdigest(),
        "checks": [f"{PCA_SIZE} x {PCA_SIZE} eigenvectors and {PCA_SIZE} means",
                   f"eigenvector entry {list(OUTLIER_INDEX)} = {OUTLIER_VALUE}, all others below {OTHER_ENTRIES_BELOW:g}",
                   f"mean {OUTLIER_INDEX[1]} = {OUTLIER_MEAN}"],
    }


def accept_embedder(statement: str, embedder_id: str, provenance: Mapping[str, Any] | None,
                    pca: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded acceptance of one archive embedder under the statement; raises if it does not qualify.

    pca: official_pca_evidence() of the file the user gave.
    """
    if statement not in STATEMENTS:
        raise IncompatibleEmbedderError(f"--accept-embedder {statement}: homesound knows how to check only "
                                        f"{', '.join(STATEMENTS)}")
    provenance = dict(provenance or {})
    reasons = []
    if provenance.get("model") != "vggish":
        reasons.append(f"it is {provenance.get('model') or 'not a known'} model, not VGGish")
    elif not provenance.get("quantized"):
        reasons.append("its embeddings are not quantized like AudioSet's release")
    elif provenance.get("pca_sha256") != pca["sha256"]:
        reasons.append(f"it was embedded with another PCA file (sha256 {str(provenance.get('pca_sha256'))[:12]}..., "
                       f"not {pca['sha256'][:12]}... of {pca['file']})")
    if reasons:
        raise IncompatibleEmbedderError(f"embedder {embedder_id} cannot stand in for {statement}: {'; '.join(reasons)}")
    return {
        "statement": statement,
        "accepted_as": statement,
        "pca_sha256": pca["sha256"],
        "pca_checks": pca["checks"],
        "weights_sha256": provenance.get("weights_sha256"),
        "source_kind": provenance.get("source_kind"),
        "not_checked": "the checkpoint's weights (no published digest): recorded here for audit",
        "accepted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def accept_workspace_embedders(workspace, statement: str, official_pca: str | Path,
                               trained_on: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Every VGGish embedder of the workspace that may stand in for `statement`, with its evidence.

    trained_on: the embedders of the training sequences; `statement` must be one of them and every
    other one must qualify. Other workspace embedders that do not qualify are passed over (named in
    the error when none does).
    """
    from homesound.workspace.recordings import embedder_provenance

    if statement not in trained_on:
        raise IncompatibleEmbedderError(f"--accept-embedder {statement}: the detector is trained on "
                                        f"{', '.join(trained_on)}, not on {statement}'s embeddings")
    pca = official_pca_evidence(official_pca)
    accepted, refused = {}, []
    for row in workspace.query("SELECT id FROM embedders ORDER BY id"):
        embedder_id = row["id"]
        if embedder_id == statement:
            continue
        try:
            accepted[embedder_id] = accept_embedder(statement, embedder_id, embedder_provenance(workspace, embedder_id),
                                                    pca)
        except IncompatibleEmbedderError as error:
            refused.append(str(error))
    unfit = [e for e in trained_on if e != statement and e not in accepted]
    if unfit:
        raise IncompatibleEmbedderError(f"the training data also holds embeddings from {', '.join(unfit)}, which "
                                        f"cannot stand in for {statement}: " + "; ".join(refused))
    if not accepted:
        raise IncompatibleEmbedderError(
            f"no embedder in the workspace can stand in for {statement}"
            + (": " + "; ".join(refused) if refused else " (it holds no other embedder)")
        )
    return accepted
