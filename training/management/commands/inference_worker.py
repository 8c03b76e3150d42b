"""`manage.py inference_worker`: the live model for chat and suggestions; runs until Ctrl-C or
SIGTERM. Requests it has not finished stay queued in Redis for the next start."""

import signal
import threading

import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training.inference.worker import InferenceWorker, run_until_stopped
from training.ml.device import pick_device, sampling_dtype


class Command(BaseCommand):
    help = "Serve the live model: chat replies and suggestions, streamed through Redis."

    def add_arguments(self, parser):
        parser.add_argument("--device", default=settings.INFERENCE_DEVICE,
                            help="cpu, cuda, cuda:1 (default: INFERENCE_DEVICE, else the best)")
        parser.add_argument("--memory-mb", type=int, default=settings.INFERENCE_MEMORY_MB,
                            help="memory the loaded model versions may take")
        parser.add_argument("--max-batch", type=int, default=settings.INFERENCE_MAX_BATCH,
                            help="most requests per forward pass")
        parser.add_argument("--prefill-chunk", type=int, default=settings.INFERENCE_PREFILL_CHUNK,
                            help="prompt tokens prefilled per step (0: whole prompts at once)")
        parser.add_argument("--prefix-cache-tokens", type=int,
                            default=settings.INFERENCE_PREFIX_CACHE_TOKENS,
                            help="tokens of finished replies kept for the next turns (0: none)")
        parser.add_argument("--threads", type=int, default=0,
                            help="CPU threads for torch (default: torch's choice)")  # fmt: skip

    def handle(self, *args, device, memory_mb, max_batch, prefill_chunk, prefix_cache_tokens,
               threads, **options):  # fmt: skip
        if memory_mb < 1 or max_batch < 1:
            raise CommandError("--memory-mb and --max-batch must be at least 1")
        if prefill_chunk < 0 or prefix_cache_tokens < 0:
            raise CommandError("--prefill-chunk and --prefix-cache-tokens must be 0 or more")
        try:
            dev = pick_device(device)
            dtype = sampling_dtype(dev, settings.SAMPLING_DTYPE)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if threads:
            torch.set_num_threads(threads)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        worker = InferenceWorker(device=dev, dtype=dtype, memory_mb=memory_mb,
                                 max_batch=max_batch, prefill_chunk=prefill_chunk,
                                 prefix_cache_tokens=prefix_cache_tokens)  # fmt: skip
        self.stdout.write(f"inference worker {worker.name}: {dev}, {str(dtype)[6:]}, "
                          f"{memory_mb} MB for models, batches of up to {max_batch}")  # fmt: skip
        self.stdout.flush()
        run_until_stopped(worker, stop)
