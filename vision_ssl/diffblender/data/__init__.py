"""DiffBlender data side: COCO and synthetic-shapes readers, condition extraction (sketch, depth,
colour palette, CLIP style), the prepared-condition cache, batching and the data module.

See :mod:`vision_ssl.diffblender.data.collate` for the batch layout the adapter consumes.
"""

from vision_ssl.diffblender.data.base import ConditionDataset, Record
from vision_ssl.diffblender.data.cache import ConditionCache
from vision_ssl.diffblender.data.collate import collate_conditions
from vision_ssl.diffblender.data.config import MODALITIES, DataConfig
from vision_ssl.diffblender.data.datamodule import DiffBlenderDataModule, build_condition_dataset
from vision_ssl.diffblender.data.depth import MissingDepthError, load_depth
from vision_ssl.diffblender.data.palette import PALETTE_SIZE, color_histogram, palette_rgb, srgb_to_lab
from vision_ssl.diffblender.data.sketch import extract_sketch
from vision_ssl.diffblender.data.style import StyleEncoder

__all__ = ["MODALITIES", "PALETTE_SIZE", "ConditionCache", "ConditionDataset", "DataConfig", "DiffBlenderDataModule",
           "MissingDepthError", "Record", "StyleEncoder", "build_condition_dataset", "collate_conditions",
           "color_histogram", "extract_sketch", "load_depth", "palette_rgb", "srgb_to_lab"]
