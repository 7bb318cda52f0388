#!/usr/bin/env bash
# Dataset roots, one variable per corpus. Empty means "not available here":
# the recipe stage that needs it stops with a message saying what to download.
# Override per site below or per run with --<name> PATH on the recipe.
LIBRISPEECH="${LIBRISPEECH:-}"         # folder containing LibriSpeech/{train-clean-100,...}
SPEECH_COMMANDS="${SPEECH_COMMANDS:-}" # Speech Commands v0.01 (train) root
SPEECH_COMMANDS_TEST="${SPEECH_COMMANDS_TEST:-}"  # Speech Commands v0.01 test-set root
FLUENT_COMMANDS="${FLUENT_COMMANDS:-}" # fluent_speech_commands_dataset root
VOXCELEB1="${VOXCELEB1:-}"             # VoxCeleb1 root with dev/ and test/
IEMOCAP="${IEMOCAP:-}"                 # IEMOCAP_full_release root
SNIPS="${SNIPS:-}"                     # Audio SNIPS root
QUESST14="${QUESST14:-}"               # quesst14Database root
LIBRIMIX="${LIBRIMIX:-}"               # Libri2Mix diarization data root
ICBHI="${ICBHI:-}"                     # ICBHI 2017 root (audio_and_txt_files + split)
CIFAR10="${CIFAR10:-}"                 # folder containing cifar-10-batches-py/ (CIFAR-10 python version)
CIFAR100="${CIFAR100:-}"               # folder containing cifar-100-python/ (CIFAR-100 python version)
TINYIMAGENET="${TINYIMAGENET:-}"       # folder containing tiny-imagenet-200/
IMAGENET="${IMAGENET:-}"               # ILSVRC2012 root with train/<wnid>/ and val/<wnid>/
# Cross-domain few-shot (CD-FSL) sources and targets; layouts in vision_ssl/data/cdfsl.py
OMNIGLOT="${OMNIGLOT:-}"               # folder holding all_runs.zip or its unzipped run01..run20 (Lake et al.'s 20 one-shot runs)
MINIIMAGENET="${MINIIMAGENET:-}"       # miniImageNet (Ravi & Larochelle split) as {train,val,test}/<class>/*.jpg
TIEREDIMAGENET="${TIEREDIMAGENET:-}"   # tieredImageNet as {train,test}/<class>/*
CROPDISEASE="${CROPDISEASE:-}"         # BSCD-FSL CropDiseases (Plant Village) unpacked to dataset/train/<class>/*.jpg
EUROSAT="${EUROSAT:-}"                 # EuroSAT RGB (EuroSAT.zip): <class>/*.jpg, 10 classes, 27,000 images
ISIC="${ISIC:-}"                       # ISIC 2018 Task 3 training images (*.jpg) + ISIC2018_Task3_Training_GroundTruth.csv
CHESTX="${CHESTX:-}"                   # NIH ChestX-ray14: images/*.png (all in one folder) + Data_Entry_2017.csv
CUB="${CUB:-}"                         # CUB-200-2011 (CUB_200_2011.tgz) unpacked: CUB_200_2011/images/<class>/*.jpg
CARS="${CARS:-}"                       # Stanford Cars train+test as <class>/* (196 classes, 16,185 images)
PLACES="${PLACES:-}"                   # Places365 16-class CD-FSL subset as <class>/* (27,440 images)
PLANTAE="${PLANTAE:-}"                 # iNaturalist-2018 Plantae 69-class CD-FSL subset as <class>/* (26,650 images)
SIMCORE_DATA="${SIMCORE_DATA:-}"       # SimCore targets: <name>/{train,test}/<class>/ ImageFolder trees (reference 3.4: aircraft, cars, pets, cub, dogs, flowers, ...; built by openssl-simcore's data/*_image_folder_generator.py)
COCO="${COCO:-}"                       # COCO 2017 root with train2017/, val2017/ and annotations/ (cocodataset.org)
STABLE_DIFFUSION="${STABLE_DIFFUSION:-}"  # diffusers Stable Diffusion v1.4 folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/) or hub id
