"""zip_d2: annotation-free instance segmentation and open-vocabulary detection on Detectron2.

Detectron2 is not on PyPI under its own name, so it is not listed here: `make setup` (or
`python tools/install_detectron2.py`) installs it, and leaves an existing working one alone.
"""
from setuptools import find_packages, setup

setup(
    name="zip_d2",
    version="0.1.0",
    description="Zip (CLIP + SAM) pseudo-labels and open-vocabulary detectors on Detectron2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["zip_d2", "zip_d2.*"]),
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "open_clip_torch>=2.23",
        "segment-anything>=1.0",
        "pycocotools>=2.0.6",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "scipy>=1.10",
        "scikit-image>=0.21",
        "Pillow>=9.0",
        "wandb>=0.19.10",  # reinit="finish_previous"
        "tqdm>=4.60",
        "fvcore>=0.1.5",
        "tensorboard",
        "submitit>=1.5",  # tools/submit_slurm.py (zip_d2.slurm)
    ],
    extras_require={"dev": ["pytest>=7", "ruff==0.17.6"]},
)
