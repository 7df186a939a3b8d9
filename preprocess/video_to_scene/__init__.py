"""From a video to a training dataset: ``python -m preprocess.video_to_scene INPUT OUT_DIR``.

Stages, each resumable (:mod:`.stages`): sharp frames (:mod:`.frames`), SIFT features, matches, mapping and
the COLMAP dataset with pycolmap (:mod:`.poses`), depth priors (:mod:`.priors`), then ``scene.json`` and a
summary (:mod:`.report`). Python: ``video_to_scene(input, out_dir, Options(...))``.
Only what the run wrote (:mod:`.manifest`) is ever deleted or replaced; an INPUT inside OUT_DIR is read in place.
"""

from preprocess.video_to_scene.frames import SceneError
from preprocess.video_to_scene.pipeline import Options, video_to_scene

__all__ = ["Options", "SceneError", "video_to_scene"]
