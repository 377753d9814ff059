"""The chaos suite: the whole stack as real processes, a mixed load, faults, and a verdict.

    python -m tools.chaos [--duration 60] [--seed N]      (`make chaos DURATION= SEED=`)

One run:
1. starts a private redis-server (append-only file), a fresh PostgreSQL task log, the
   Elasticsearch, embeddings and ChatbotMobile stand-ins, the API, two es-workers, an
   http-worker and the scheduler (`stack.py`);
2. drives every write kind through the HTTP API for `duration` seconds (`load.py`), while
   faults chosen by the seed hit the stack at random moments (`faults.py`): Elasticsearch
   down, ChatbotMobile answering 500/429 or too late (applied, answer lost), a worker
   SIGKILLed mid-task, a worker SIGTERMed, Redis killed or shut down and restarted, the API
   restarted;
3. lets the system settle, then compares what each downstream holds with what the accepted
   requests imply (`expect.py`) and prints one summary line, last:
   `accepted=N delivered=N lost=0 duplicated_effects=0 failed=0 max_delay_s=X seed=S`.

The exit status is non-zero if anything accepted was lost, applied twice in effect, failed,
or still unfinished when the settle time ran out. Logs of every process stay in the work
directory, printed at the end.
"""
