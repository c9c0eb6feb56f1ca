/**
 * The API-created static forwards as the state file holds them (state/store.ts embeds the
 * records in the daemon's one state file and makes them durable).
 */
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'
import { WgpmpError } from '../core/errors.js'
import { formatRange, forwardId, makeSpec, portOrRange, type StaticForward } from '../mappings/static.js'

/** One API-created static forward as stored in the state file (state/store.ts embeds it). */
export const storedForwardSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'client', 'protocol', 'external_port', 'internal_port', 'created_at'],
  properties: {
    id: { type: 'string' },
    client: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
    protocol: { enum: ['tcp', 'udp', 'both'] },
    external_port: portOrRange,
    internal_port: portOrRange,
    created_at: { type: 'string' },
  },
} as const satisfies JSONSchema

export type StoredForward = FromSchema<typeof storedForwardSchema>

/** Where API-created static forwards are kept: what forwarder/statics.ts needs of this store. */
export interface StaticStore {
  list(): StaticForward[]
  get(id: string): StaticForward | undefined
  /** Adds (or replaces) and makes it durable; rejects (and changes nothing) on a write error. */
  put(f: StaticForward): Promise<void>
  /** Deletes and makes it durable; false for an unknown id. */
  delete(id: string): Promise<boolean>
}

/**
 * The API-created static forwards, over records that live in a document someone else writes (the
 * daemon's state file): every mutation is in memory at once and durable when its promise
 * resolves (`save` must make records() durable); saves are serialized.
 */
export class StaticForwardStore implements StaticStore {
  private readonly items = new Map<string, StaticForward>()
  private writing: Promise<void> = Promise.resolve()

  /** Rejects bad records with WGPMP_STATE_INVALID. */
  constructor(
    records: readonly StoredForward[],
    private readonly save: () => Promise<void>,
    source = 'state file',
  ) {
    for (const s of records) {
      const r = makeSpec(s.protocol, s.external_port, s.internal_port)
      if (!r.ok) throw new WgpmpError('WGPMP_STATE_INVALID', `${source}: forward ${s.id}: ${r.error}`)
      const f: StaticForward = { ...r.spec, id: forwardId(r.spec), client: s.client, source: 'api', createdAt: s.created_at }
      this.items.set(f.id, f)
    }
  }

  /** The stored form of every forward, for the state file. */
  records(): StoredForward[] {
    return this.list().map((f) => ({
      id: f.id,
      client: f.client,
      protocol: f.protocol,
      external_port: formatRange(f.external),
      internal_port: formatRange(f.internal),
      created_at: f.createdAt,
    }))
  }

  list(): StaticForward[] {
    return [...this.items.values()]
  }

  get(id: string): StaticForward | undefined {
    return this.items.get(id)
  }

  /** Adds (or replaces, by id) and persists. On a write error the forward is taken back out and the promise rejects. */
  async put(f: StaticForward): Promise<void> {
    const before = this.items.get(f.id)
    this.items.set(f.id, f)
    try {
      await this.persist()
    } catch (e) {
      if (this.items.get(f.id) === f) {
        if (before) this.items.set(f.id, before)
        else this.items.delete(f.id)
      }
      throw e
    }
  }

  /** Deletes and persists; an unknown id resolves false without writing. On a write error the forward is restored. */
  async delete(id: string): Promise<boolean> {
    const f = this.items.get(id)
    if (!f) return false
    this.items.delete(id)
    try {
      await this.persist()
    } catch (e) {
      if (!this.items.has(id)) this.items.set(id, f)
      throw e
    }
    return true
  }

  /** Saves the current state (serialized after any save in flight). */
  private persist(): Promise<void> {
    const p = this.writing.then(this.save, this.save)
    this.writing = p.catch(() => {})
    return p
  }
}
