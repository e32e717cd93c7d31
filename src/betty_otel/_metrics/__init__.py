"""Metrics beside the traces: how long executions take and how many are running.

`conventions` names the instruments, `record` is the hot path the executions call,
`series` bounds the label values, `setup` decides which meter the instruments live on
and `provider` makes betty_otel's own MeterProvider from the environment. Importing the
package imports none of the SDK: only `provider` does, when metrics are asked for.
"""

from betty_otel._metrics.record import execution_ended, execution_started, record_execution

__all__ = ["execution_ended", "execution_started", "record_execution"]
