"""Image self-supervised and few-shot methods: MixCo, SelfCon, SimCore, ReFine, DiffBlender."""
