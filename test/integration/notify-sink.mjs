// A webhook receiver for the notification lab test, run inside the server namespace:
//   node notify-sink.mjs PORT
// Prints one JSON line per request it has read ({ path, headers, body }). /live answers 200.
// /dead answers 200 until a line "hang" arrives on stdin; from then on it never answers.
import { createServer } from 'node:http'

const port = Number(process.argv[2])
let hang = false
process.stdin.setEncoding('utf8')
process.stdin.on('data', (d) => {
  if (d.includes('hang')) hang = true
  process.stdout.write(JSON.stringify({ control: 'hang' }) + '\n')
})
const server = createServer((req, res) => {
  let body = ''
  req.setEncoding('utf8')
  req.on('data', (c) => (body += c))
  req.on('end', () => {
    process.stdout.write(JSON.stringify({ path: req.url, headers: req.headers, body, hanging: req.url === '/dead' && hang }) + '\n')
    if (req.url === '/dead' && hang) return // never answers
    res.writeHead(200).end()
  })
})
server.listen(port, '127.0.0.1', () => process.stdout.write(JSON.stringify({ listening: port }) + '\n'))
