/**
 * SOAP 1.1 for UPnP control: parsing an action request and building responses and UPnP faults.
 * Pure, never throws.
 *
 * Parsing is fast-xml-parser 5 with entity processing off, after refusing any document type
 * declaration or entity declaration (so no DTD, no entity expansion, no external fetch: the XXE
 * and billion-laughs classes cannot occur), and after the library's own well-formedness check.
 * Namespaces are matched by local name (miniupnpd's parser does the same: clients vary the
 * prefixes). Only the five predefined XML entities and numeric character references are decoded,
 * by hand, in argument values.
 *
 * The action is the SOAPAction header's ("<serviceType>#<action>", quotes optional), as in
 * miniupnpd; the body's action element must have the same local name (else 401). Without the
 * header (not UPnP-conformant, but cheap to allow) the body's element names the action.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { xmlEscape } from './description.js'

/** Control request bodies above this are refused before parsing (real ones are under 1 KiB). */
export const SOAP_BODY_MAX_BYTES = 16 * 1024

/** UPnP error codes used (UDA 1.0 §3.2.2, WANIPConnection:1 §2.4 and :2 §2.5), with their spec descriptions. */
export const UPNP_ERRORS = {
  401: 'Invalid Action',
  402: 'Invalid Args',
  501: 'Action Failed',
  606: 'Action not authorized',
  713: 'SpecifiedArrayIndexInvalid',
  714: 'NoSuchEntryInArray',
  715: 'WildCardNotPermittedInSrcIP',
  716: 'WildCardNotPermittedInExtPort',
  718: 'ConflictInMappingEntry',
  724: 'SamePortValuesRequired',
  725: 'OnlyPermanentLeasesSupported',
  726: 'RemoteHostOnlySupportsWildcard',
  727: 'ExternalPortOnlySupportsWildcard',
  728: 'NoPortMapsAvailable',
  729: 'ConflictWithOtherMechanisms',
  730: 'PortMappingNotFound',
  733: 'InconsistentParameter',
} as const
export type UpnpErrorCode = keyof typeof UPNP_ERRORS

export interface SoapRequest {
  readonly action: string
  /** Argument name -> value (decoded text; the first occurrence if repeated). */
  readonly args: ReadonlyMap<string, string>
}

export type SoapParse = { readonly ok: true; readonly value: SoapRequest } | { readonly ok: false; readonly error: UpnpErrorCode; readonly why: string }

const parser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  processEntities: false,
  htmlEntities: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
})

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/

/** The action name of a SOAPAction header value, or null if it does not have the "<type>#<name>" form. */
export function actionFromHeader(value: string | undefined): { serviceType: string; action: string } | null {
  if (value === undefined) return null
  const v = value.trim().replace(/^"(.*)"$/, '$1')
  const hash = v.lastIndexOf('#')
  if (hash <= 0) return null
  const action = v.slice(hash + 1)
  return NAME.test(action) ? { serviceType: v.slice(0, hash), action } : null
}

/** Decodes the predefined entities and character references; anything else stays as written. */
export function decodeText(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});/g, (all, e: string) => {
    if (e[0] !== '#') return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[e]!
    const cp = e[1] === 'x' ? Number.parseInt(e.slice(2), 16) : Number.parseInt(e.slice(1), 10)
    return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : all
  })
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)

/** Parses a control request body; `soapAction` is the SOAPAction header, if any. */
export function parseSoapRequest(body: string, soapAction: string | undefined): SoapParse {
  try {
    if (body.length > SOAP_BODY_MAX_BYTES) return { ok: false, error: 402, why: 'body too large' }
    if (/<!DOCTYPE|<!ENTITY/i.test(body)) return { ok: false, error: 402, why: 'document type declarations are refused' }
    const header = actionFromHeader(soapAction)
    if (soapAction !== undefined && header === null) return { ok: false, error: 401, why: 'SOAPAction header is not <serviceType>#<action>' }
    // miniupnpc (2.2.4 at least) does not escape the description it sends: a bare "&" (as in
    // "Tom & Jerry") is taken as text, as miniupnpd's lenient parser does. A bare "<" stays an error.
    const text = body.replace(/&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});)/g, '&amp;')
    if (XMLValidator.validate(text) !== true) return { ok: false, error: 402, why: 'not well-formed XML' }
    const doc: unknown = parser.parse(text)
    const env = isRecord(doc) ? doc['Envelope'] : undefined
    const soapBody = isRecord(env) ? env['Body'] : undefined
    if (!isRecord(soapBody)) return { ok: false, error: 402, why: 'no SOAP Envelope/Body' }
    const names = Object.keys(soapBody).filter((k) => k !== '#text')
    if (names.length !== 1) return { ok: false, error: 402, why: 'Body must hold exactly one action element' }
    const element = names[0]!
    if (!NAME.test(element)) return { ok: false, error: 401, why: 'bad action element name' }
    if (header !== null && header.action !== element) return { ok: false, error: 401, why: 'SOAPAction header and body name different actions' }
    const args = new Map<string, string>()
    const raw = soapBody[element]
    if (isRecord(raw)) {
      for (const [k, v] of Object.entries(raw)) {
        if (k === '#text' || args.size >= 32) continue
        const first: unknown = Array.isArray(v) ? (v as unknown[])[0] : v
        if (typeof first === 'string') args.set(k, decodeText(first))
        else if (typeof first === 'number' || typeof first === 'boolean') args.set(k, String(first))
        else args.set(k, '') // nested markup where text belongs: treated as empty, then validated by the action
      }
    }
    return { ok: true, value: { action: element, args } }
  } catch {
    return { ok: false, error: 402, why: 'unparsable' }
  }
}

const ENVELOPE_OPEN =
  '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
const ENVELOPE_CLOSE = '</s:Body></s:Envelope>\r\n'

/** A successful action response: <u:{action}Response xmlns:u="{serviceType}"> with the out arguments in order. */
export function buildResponse(serviceType: string, action: string, out: ReadonlyArray<readonly [string, string | number]>): string {
  const inner = out.map(([k, v]) => `<${k}>${xmlEscape(String(v))}</${k}>`).join('')
  return `${ENVELOPE_OPEN}<u:${action}Response xmlns:u="${xmlEscape(serviceType)}">${inner}</u:${action}Response>${ENVELOPE_CLOSE}`
}

/** A response whose single out argument is an XML document carried as CDATA (GetListOfPortMappings). */
export function buildCdataResponse(serviceType: string, action: string, name: string, xml: string): string {
  const safe = xml.replace(/]]>/g, ']]]]><![CDATA[>')
  return `${ENVELOPE_OPEN}<u:${action}Response xmlns:u="${xmlEscape(serviceType)}"><${name}><![CDATA[${safe}]]></${name}></u:${action}Response>${ENVELOPE_CLOSE}`
}

/** A UPnP fault (sent with HTTP 500), as miniupnpd and the UDA give it. */
export function buildFault(code: UpnpErrorCode): string {
  return (
    `${ENVELOPE_OPEN}<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>` +
    `<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode><errorDescription>${UPNP_ERRORS[code]}</errorDescription></UPnPError>` +
    `</detail></s:Fault>${ENVELOPE_CLOSE}`
  )
}
