/** Starts the HTTP API and page (when api_token_file is set) and the token-free /metrics listener (when metrics_listen is). */
import { parseHostPort } from '../config/schema-api.js'
import { WgpmpError } from '../core/errors.js'
import type { Components } from '../core/lifecycle.js'
import type { Logger } from '../log.js'
import { loadApiToken, startApi, type ApiDeps } from './api.js'
import { startMetricsListener } from './metrics-listen.js'

export async function startHttp(o: {
  apiListen: string
  tokenFile: string | undefined
  metricsListen: string | undefined
  deps: () => ApiDeps
  log: Logger
  components: Components
}): Promise<{ address: string; port: number } | null> {
  let address: { address: string; port: number } | null = null
  if (!o.tokenFile) {
    o.log.info('HTTP API off: set api_token_file to enable it')
  } else {
    const { token, loose } = await loadApiToken(o.tokenFile)
    if (loose) o.log.warn({ file: o.tokenFile }, 'api_token_file is readable by others; chmod 600 it')
    const server = await startApi({ listen: parseHostPort(o.apiListen)!, token, log: o.log.child({ component: 'api' }), deps: o.deps() })
    address = server.address
    o.components.add('api', () => server.close())
  }
  if (o.metricsListen) {
    const listen = o.metricsListen
    const deps = o.deps()
    const ml = await startMetricsListener(parseHostPort(listen)!, deps.metrics, o.log.child({ component: 'metrics' })).catch((err: unknown) => {
      throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `cannot listen on metrics_listen ${listen} (${(err as Error).message})`, { cause: err })
    })
    o.components.add('metrics listener', () => ml.close())
  }
  return address
}
