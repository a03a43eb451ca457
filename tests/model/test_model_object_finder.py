import numpy as np
import pytest

from world_model.model.object_finder import load_finder
from world_model.semantics import OBJECT_CLASS_IDS


def test_the_shipped_finder_finds_the_engines_objects_by_shape():
    from world_model.engine.world import GroundTruthWorld, RenderConfig

    finder = load_finder()
    found = true = hits = right = objects = 0
    for seed in range(200, 240):  # training scenes' start views with an object of 40+ pixels in view
        world = GroundTruthWorld(seed, RenderConfig(64, 64, 70.0))
        view = world.observe()
        world.close()
        truth = np.where(np.isin(view.semantic, OBJECT_CLASS_IDS), view.semantic, 0)
        if (truth > 0).sum() < 40:
            continue
        seen = finder.find(view.rgb)
        found, true, hits = (
            found + (seen > 0).sum(),
            true + (truth > 0).sum(),
            hits + ((seen > 0) & (truth > 0)).sum(),
        )
        biggest = np.bincount(truth[truth > 0]).argmax()  # the object class with the most pixels
        objects += 1
        right += np.bincount(seen[truth == biggest], minlength=256).argmax() == biggest
        if objects == 12:
            break
    assert objects == 12
    assert hits / true > 0.7 and hits / found > 0.7  # per-pixel recall and precision
    assert right >= 8  # the biggest object gets its shape (9 of these 12; 74% of held-out frames)


def test_a_file_that_is_not_a_finder_is_refused(tiny_weights):
    with pytest.raises(ValueError, match="not dreamx-object-finder weights"):
        load_finder(tiny_weights)
