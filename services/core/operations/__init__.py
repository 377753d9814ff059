"""Operator actions on the task log: redrive failed tasks, and the `durable-tasks` command.

Above both the task log and enqueue (a redrive enqueues again), so that the task log never
imports the code that publishes.
"""
