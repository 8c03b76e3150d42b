"""Writes on the training tables. Views, the admin, the tasks and the commands call these; none
repeats their rules. Status changes happen only in `status.transition`."""
