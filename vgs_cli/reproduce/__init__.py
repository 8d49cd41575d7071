"""`vgs reproduce`: orchestration above the middle packages (official + generate + metrics), below cli."""
