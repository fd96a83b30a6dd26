"""QUndoStack integration: every core command is wrapped in a QUndoCommand.

The core command layer (`dubstudio.core.commands`) does the edit and knows how to undo it; this
module only adapts it to Qt so the Edit menu, Ctrl+Z / Ctrl+Shift+Z and the undo view work.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from PySide6 import QtGui

logger = logging.getLogger(__name__)


class CoreCommand(Protocol):
    """What the adapter needs from a core command."""

    text: str

    def do(self) -> Any: ...
    def undo(self) -> Any: ...


class CoreCommandAdapter(QtGui.QUndoCommand):
    """A core command on a QUndoStack (``push`` runs it)."""

    def __init__(self, command: CoreCommand) -> None:
        super().__init__(str(getattr(command, "text", "Edit")))
        self.command = command

    def redo(self) -> None:
        self.command.do()

    def undo(self) -> None:
        self.command.undo()


class UndoStack(QtGui.QUndoStack):
    """The editor's undo history."""

    def push_command(self, command: CoreCommand) -> None:
        """Run ``command`` and record it.

        A command that raises (a refused edit) is not recorded and the error propagates.
        """
        # Run it once first so a refused edit never enters the history, then record it without
        # running it again (QUndoStack.push calls redo()).
        command.do()
        self.push(_AlreadyDone(CoreCommandAdapter(command)))


class _AlreadyDone(QtGui.QUndoCommand):
    """Records an adapter whose first redo already happened (QUndoStack.push calls redo)."""

    def __init__(self, inner: CoreCommandAdapter) -> None:
        super().__init__(inner.text())
        self.inner = inner
        self._first = True

    def redo(self) -> None:
        if self._first:
            self._first = False
            return
        self.inner.redo()

    def undo(self) -> None:
        self.inner.undo()
