"""The project page: one page composed of every package's card (prompts, uploads, the jobs card, each
kind of run's card from app.jobs.kinds, evaluation rounds). It sits above everything it shows."""
