/** writeFileAtomic: the one way wgpmp replaces a file on disk. */
import { randomBytes } from 'node:crypto'
import { mkdir, open, rename, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/**
 * Writes data (a string, or its pieces in turn) to path atomically and durably: a temp file in the same directory (mode 0600),
 * fsync, rename over path, fsync the directory. Readers see the old or the new file, never a
 * torn one, even across a power cut. Creates the directory (0700) if missing. Rejects on any
 * I/O error, leaving path untouched and the temp file removed.
 */
export async function writeFileAtomic(path: string, data: string | AsyncIterable<string>): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const tmp = join(dir, `.${path.slice(dir.length + 1)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  try {
    const fh = await open(tmp, 'wx', 0o600)
    try {
      if (typeof data === 'string') await fh.writeFile(data, 'utf8')
      else for await (const part of data) await fh.write(part, null, 'utf8')
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
  } catch (e) {
    await unlink(tmp).catch(() => {})
    throw e
  }
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}
