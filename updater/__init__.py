"""Learning new tasks: the trainer, and the updater that feeds it from the feedback log."""
