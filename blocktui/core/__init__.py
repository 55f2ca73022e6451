"""The pure model: jobs, states, sizes, rates and scheduling. No UI, no libvirt, no QMP."""
