"""Training: one loop (:class:`~medseg.training.trainer.Trainer`) for every task; variants override a step."""
