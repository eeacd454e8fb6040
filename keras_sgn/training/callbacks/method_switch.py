"""`MethodSwitch`: cheap, then strong: another training method for the last epochs."""

import keras


class MethodSwitch(keras.callbacks.Callback):
    """Trains with the compiled method until `switch_epoch` (0-based), then
    with `finish` (e.g. a single-step method for most of the run and a short
    PGD finish). The method of each epoch follows from its number alone, so a
    resumed run switches exactly where an uninterrupted one does.

    Args:
        finish: the `TrainingMethod` of the epochs from `switch_epoch` on.
        switch_epoch: the first epoch (0-based) trained with `finish`.
    """

    def __init__(self, finish, switch_epoch):
        super().__init__()
        self.finish = finish
        self.switch_epoch = int(switch_epoch)
        self.first = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first is None:
            self.first = self.model.method
            self.finish.jit_compile = self.first.jit_compile
        wanted = self.finish if epoch >= self.switch_epoch else self.first
        if self.model.method is not wanted:
            self.model.method = wanted
            # The step was traced with the other method: trace it again.
            self.model.make_train_function(force=True)
