"""Image augmentation pipelines (PIL image in, normalised tensor out) and the multi-view wrapper.

=================  ===========================================================================
name               pipeline
=================  ===========================================================================
``simclr``         RRC(size, scale .2-1), flip, ColorJitter(.8,.8,.8,.2) p .8, grayscale p .2,
                   Gaussian blur (sigma .1-2) p .5 (SimCLR + MixCo)
``mocov2``         RRC(size, .2-1), ColorJitter(.4,.4,.4,.1) p .8, grayscale p .2, blur (sigma
                   .1-2) p .5, flip (MoCo v2 "aug-plus", MoCo / MixCo)
``supcon``         RRC(size, .2-1), flip, ColorJitter(.4,.4,.4,.1) p .8, grayscale p .2 (SupCon,
                   SelfCon)
``cdfsl_strong``   RRC(size), ColorJitter(.4,.4,.4,0), grayscale p .1, blur k=5 p .3, flip
``cdfsl_base``     RRC(size), ColorJitter(.4,.4,.4,0), flip
``rrc_flip``       RRC(size), flip (linear-evaluation training)
``simcore``        RRC(size, .2-1), flip, ColorJitter(.8,.8,.8,.2) p .8, grayscale p .2, no blur
                   (SimCore's SimCLR)
``rrc02_flip``     RRC(size, .2-1), flip (SimCore linear-evaluation training)
``resize_crop``    Resize(size * 256 / 224), CenterCrop(size) (evaluation at 224)
``plain``          Resize(size) only (evaluation of CIFAR-size images)
=================  ===========================================================================

The reference blurs with a PIL radius; torchvision's blur needs a kernel, taken as the odd number
nearest 10 % of the image side (23 at 224, SimCLR's choice; 3 at 32).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor
from torchvision import transforms as T

AUGMENTATIONS = ("simclr", "mocov2", "supcon", "cdfsl_strong", "cdfsl_base", "rrc_flip", "simcore", "rrc02_flip",
                 "resize_crop", "plain")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def blur_kernel(size: int) -> int:
    """Odd Gaussian-blur kernel of about 10 % of the image side (at least 3)."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


def _pipeline(name: str, size: int) -> list[Callable]:
    blur = T.RandomApply([T.GaussianBlur(blur_kernel(size), sigma=(0.1, 2.0))], p=0.5)
    if name == "simclr":
        return [T.RandomResizedCrop(size, scale=(0.2, 1.0)), T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), T.RandomGrayscale(p=0.2), blur]
    if name == "mocov2":
        return [T.RandomResizedCrop(size, scale=(0.2, 1.0)), T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2), blur, T.RandomHorizontalFlip()]
    if name == "supcon":
        return [T.RandomResizedCrop(size, scale=(0.2, 1.0)), T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
    if name == "cdfsl_strong":
        return [T.RandomResizedCrop(size), T.ColorJitter(0.4, 0.4, 0.4, 0.0), T.RandomGrayscale(p=0.1),
                T.RandomApply([T.GaussianBlur(5)], p=0.3), T.RandomHorizontalFlip()]
    if name == "cdfsl_base":
        return [T.RandomResizedCrop(size), T.ColorJitter(0.4, 0.4, 0.4, 0.0), T.RandomHorizontalFlip()]
    if name == "rrc_flip":
        return [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    if name == "simcore":
        return [T.RandomResizedCrop(size, scale=(0.2, 1.0)), T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), T.RandomGrayscale(p=0.2)]
    if name == "rrc02_flip":
        return [T.RandomResizedCrop(size, scale=(0.2, 1.0)), T.RandomHorizontalFlip()]
    if name == "resize_crop":
        return [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]
    if name == "plain":
        return [T.Resize(size)]
    raise ValueError(f"unknown augmentation {name!r}; choose one of {AUGMENTATIONS}")


def build_transform(name: str, size: int, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> Callable[..., Tensor]:
    """Pipeline ``name`` at output side ``size``, ending in ToTensor + Normalize(mean, std)."""
    return T.Compose([*_pipeline(name, size), T.ToTensor(), T.Normalize(mean, std)])


class MultiView:
    """Applies ``transform`` ``num_views`` times to one image and returns the list of views."""

    def __init__(self, transform: Callable[..., Tensor], num_views: int = 2) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.transform = transform
        self.num_views = num_views

    def __call__(self, image) -> list[Tensor]:
        return [self.transform(image) for _ in range(self.num_views)]

    def __repr__(self) -> str:
        return f"MultiView(num_views={self.num_views}, transform={self.transform!r})"
