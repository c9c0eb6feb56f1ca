/** MemoryDriver passes the shared ForwardDriver conformance suite. */
import { MemoryDriver } from '../../../src/drivers/memory.js'
import { driverConformance } from '../../drivers/conformance.js'

driverConformance('memory', () => Promise.resolve({ driver: new MemoryDriver(), cleanup: () => Promise.resolve() }))
