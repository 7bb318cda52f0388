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
