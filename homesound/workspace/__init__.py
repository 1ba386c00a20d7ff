"""The user's workspace: one SQLite file that every stage reads and writes through this package.

Each stage owns one module here with its tables (a *component*) and its accessor functions;
no other code writes SQL. Components migrate forward independently on open, so stages can
grow their tables without stepping on each other.
"""

from homesound.workspace.core import Workspace, WorkspaceBusyError

__all__ = ["Workspace", "WorkspaceBusyError"]
