from django.db import models


class WorkerHeartbeat(models.Model):
    """A test task's proof that a worker consumed from a queue and could write to the database.

    Staff send one per queue from the status page; the token makes a redelivered task write
    one row, not two.
    """

    token = models.CharField(max_length=64, unique=True)
    queue = models.CharField(max_length=50)
    worker = models.CharField(max_length=200, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self):
        return f"{self.queue} → {self.worker or 'waiting'}"
