"""ocs-core's agents in ocs's plugin registry (the ``ocs.plugins`` entry point ``ocs-core``).

With this, ocs 0.12's ``ocs-agent-cli``, HostManager and ``ocsbow`` launch ocs-core's agents. ocs
picks among plugins offering one class name in an arbitrary (hash) order, so a class that ocs
ships too has a distinct name here: ``OcsCoreFakeDataAgent``, ``OcsCoreHostManager`` and
``OcsCoreAccessDirector`` (ocs-core's own launcher knows both spellings). docs/agents.md lists the names.
"""

package_name = "ocs-core"

#: Our class names that ocs 0.12 ships as well, and the names they have in ocs's registry.
RENAMED = {"FakeDataAgent": "OcsCoreFakeDataAgent", "HostManager": "OcsCoreHostManager",
           "AccessDirector": "OcsCoreAccessDirector"}

agents = {
    "OcsCoreFakeDataAgent": {"module": "agents.fake_data.agent", "entry_point": "main"},
    "OcsCoreHostManager": {"module": "agents.host_manager.agent", "entry_point": "main"},
    "OcsCoreAccessDirector": {"module": "agents.access.agent", "entry_point": "main"},
    "RigAgent": {"module": "agents.rig.agent", "entry_point": "main"},
    "InstrumentAgent": {"module": "agents.instrument.agent", "entry_point": "main"},
    "SimulatedInstrument": {"module": "agents.instrument.simulated", "entry_point": "main"},
    "OBEAgent": {"module": "agents.obe.agent", "entry_point": "main"},
    "FeedArchiver": {"module": "agents.archive.agent", "entry_point": "main"},
}
