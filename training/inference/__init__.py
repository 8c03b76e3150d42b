"""The live model: a long-lived worker process that keeps model versions loaded and streams
replies through Redis (`channel`), and what it runs (`worker`, `loaded`)."""
