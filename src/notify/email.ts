/**
 * Email channel through nodemailer: smtp_url "smtp://[user@]host:587" (STARTTLS whenever the
 * server offers it, nodemailer's default for a non-secure connection) or "smtps://host:465"
 * (TLS from the start). The password comes from password_file only, never from the URL.
 */
import { createTransport, type Transporter } from 'nodemailer'
import type { Channel, Message } from './dispatcher.js'
import { payloadOf, textOf, titleOf } from './format.js'

export interface EmailOptions {
  name: string
  smtpUrl: string
  from: string
  to: readonly string[]
  password: string | null
  timeoutMs?: number
}

export function emailChannel(o: EmailOptions): Channel {
  const u = new URL(o.smtpUrl)
  const secure = u.protocol === 'smtps:'
  const user = decodeURIComponent(u.username)
  const timeout = o.timeoutMs ?? 15_000
  let transport: Transporter | null = null
  const get = (): Transporter =>
    (transport ??= createTransport({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port ? Number(u.port) : secure ? 465 : 587,
      secure,
      auth: user ? { user, pass: o.password ?? '' } : undefined,
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout,
    }))
  return {
    name: o.name,
    kind: 'email',
    target: `${u.protocol}//${u.host}`,
    async send(m: Message) {
      const text = textOf(m) + '\n\n-- \nThe event as JSON (what webhooks receive):\n' + JSON.stringify(payloadOf(m), null, 1).slice(0, 200_000) + '\n'
      await get().sendMail({ from: o.from, to: [...o.to], subject: `wgpmp: ${titleOf(m)}`, text })
    },
    close() {
      transport?.close()
      transport = null
    },
  }
}
