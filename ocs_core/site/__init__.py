"""The site file: its schema and validation, the standard agent options and environment, agent-class discovery."""
