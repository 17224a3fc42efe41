"""The Runs screen's actions on runs: stop (it asks first), retry, delete or archive, the worker dialog, and any of
them on every run shown. What may be done is decided by ``kdengine.api`` (``store.actions``), as for the CLI; the
work runs off the UI thread. A mixin of :class:`~kdtui.screens.runs.RunsScreen`."""
from __future__ import annotations



from kdengine import api
from kdengine.errors import KDError

from ..messages import RemoveRequested, RetryRequested, StopRequested
from .dialogs import ConfirmScreen
from .run_list import GROUP


class RunActionsMixin:
    """Stop, retry, delete, archive; one run or all shown."""

    def _target(self, action: str) -> str | None:
        """The selected run, if ``action`` may be done to it (store.actions decides, as for the CLI)."""
        rid = self.selected
        if rid is None or rid not in self.rows:
            self.notify("no run selected", severity="warning")
            return None
        row = self.rows[rid]
        why = api.why_not(action, row.state, row.reason if row.damaged else None, row.readable)
        if why is not None:
            self.notify(f"{rid} is {why}", severity="warning")
            return None
        return rid

    def action_stop_run(self) -> None:
        rid = self._target("stop")
        if rid is None:
            return

        def done(answer: str | None) -> None:
            if answer == "y":
                self.post_message(StopRequested(rid))

        details = "It stops within a few seconds; its last finished epoch stays resumable (r)."
        self.app.push_screen(ConfirmScreen(f"Stop {rid}?", details), done)

    def action_retry_run(self) -> None:
        rid = self._target("retry")
        if rid is not None:
            self.post_message(RetryRequested(rid))

    def action_remove_run(self) -> None:
        rid = self._target("delete")
        if rid is None:
            return

        def done(answer: str | None) -> None:
            if answer in ("d", "a"):
                self.post_message(RemoveRequested(rid, archive=answer == "a"))

        self.app.push_screen(ConfirmScreen(f"Delete or archive {rid}?", api.what_goes(self.app.store, rid),
                                           {"d": "delete", "a": "archive"}), done)

    def action_start_worker(self) -> None:
        self.app.ask_worker()

    def action_act_on_shown(self) -> None:
        """Stop, retry, delete or archive every run the list shows (a filter, a study, a state): asks first."""
        ids = [k for k in self.shown if not k.startswith(GROUP)]
        if not ids:
            self.notify("no run is shown", severity="warning")
            return
        what = f"the {len(ids)} run(s) shown" + (f" (filter “{self.query_text}”)" if self.query_text else "")

        def act(action: str) -> tuple[int, int]:
            store, counts = self.app.store, 0
            batch = api.plan_action(store, ids, action)  # the CLI's batch rule: what applies, the rest skipped
            skipped = len(batch.skipped)
            for rid in batch.apply:
                try:
                    if action == "stop":
                        api.stop(store, rid)
                    elif action == "retry":
                        api.retry(store, rid)
                    else:
                        api.remove(store, rid, archive=action == "archive")
                    counts += 1
                except (KDError, OSError):
                    skipped += 1
            return counts, skipped

        def done(answer: str | None) -> None:
            if answer is None:
                return
            action = {"s": "stop", "r": "retry", "d": "delete", "a": "archive"}[answer]
            verb = {"s": "stopped", "r": "queued again", "d": "deleted", "a": "archived"}[answer]
            self.app.call_api(lambda: act(action), lambda n: self.notify(
                f"{verb} {n[0]} run(s)" + (f"; {n[1]} skipped (not in a state for it)" if n[1] else "")))

        self.app.push_screen(ConfirmScreen(f"Act on {what}?", "stop: running and queued ones · retry: failed and "
                                           "stopped ones · delete or archive: all but running ones",
                                           {"s": "stop", "r": "retry", "d": "delete", "a": "archive"}), done)
