// Generates tests/vectors/unixfs.json: UnixFS file CIDs computed by the reference JavaScript
// importer (ipfs-unixfs-importer) and a dag-cbor vector (@ipld/dag-cbor + multiformats).
//
//   cd tests/vectors && npm ci && node make_unixfs_vectors.mjs > unixfs.json
//
// The Python tests read the JSON only; they need neither npm nor the network.
//
// Inputs are deterministic: the bytes of a vector are the concatenation of
// SHA-256(seed || uint64_be(i)) for i = 0, 1, 2, ... truncated to the vector's length, where
// seed is the UTF-8 encoding of the vector's "seed" text.

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

import * as dagCbor from '@ipld/dag-cbor'
import { importByteStream } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced, trickle } from 'ipfs-unixfs-importer/layout'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

const require = createRequire(import.meta.url)

function packageVersion (name) {
  const path = require.resolve(`${name}/package.json`, { paths: [process.cwd()] })
  return JSON.parse(readFileSync(path, 'utf8')).version
}

function versionOf (name) {
  // Some packages do not export package.json; read it from node_modules directly.
  try {
    return packageVersion(name)
  } catch {
    const url = new URL(`./node_modules/${name}/package.json`, import.meta.url)
    return JSON.parse(readFileSync(url, 'utf8')).version
  }
}

const GENERATOR = 'sha256-counter'
const GENERATOR_TEXT =
  'bytes = SHA-256(seed || uint64_be(0)) || SHA-256(seed || uint64_be(1)) || ..., ' +
  'truncated to length; seed is the UTF-8 encoding of the seed text'

function* generate (seedText, length, pieceSize = 65536) {
  const seed = Buffer.from(seedText, 'utf8')
  const counter = Buffer.alloc(8)
  let produced = 0
  let i = 0n
  let piece = []
  let pieceLength = 0
  while (produced < length) {
    counter.writeBigUInt64BE(i)
    i += 1n
    let digest = createHash('sha256').update(seed).update(counter).digest()
    if (produced + digest.length > length) {
      digest = digest.subarray(0, length - produced)
    }
    produced += digest.length
    piece.push(digest)
    pieceLength += digest.length
    if (pieceLength >= pieceSize) {
      yield new Uint8Array(Buffer.concat(piece))
      piece = []
      pieceLength = 0
    }
  }
  if (pieceLength > 0) {
    yield new Uint8Array(Buffer.concat(piece))
  }
}

// A blockstore that records every block under its full CID text.
class RecordingBlockstore {
  constructor () {
    this.blocks = new Map()
  }

  async put (cid, bytes) {
    this.blocks.set(cid.toString(), bytes)
    return cid
  }
}

async function importVector (seed, length, options, { keepBlocks = false } = {}) {
  const store = new RecordingBlockstore()
  const entry = await importByteStream(generate(seed, length), store, options)
  const out = {
    root: entry.cid.toString(),
    dag_size: Number(entry.size),
    block_count: store.blocks.size
  }
  if (keepBlocks) {
    out.blocks = Object.fromEntries(
      [...store.blocks.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([cid, bytes]) => [cid, Buffer.from(bytes).toString('base64')])
    )
  }
  return out
}

const CHUNK = 262144

// The settings p2pdoc uses, which are also `ipfs add --cid-version=1`'s.
const defaultSettings = {
  cidVersion: 1,
  rawLeaves: true,
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: CHUNK }),
  layout: balanced({ maxChildrenPerNode: 174 })
}

const defaultInputs = [
  ['empty', 0],
  ['one-byte', 1],
  ['one-chunk', CHUNK],
  ['one-chunk-plus-one', CHUNK + 1],
  ['second-level', 174 * CHUNK + 1],
  ['multi-megabyte', 5 * 1048576 + 12345]
]

// The same algorithm with tiny chunks and fan-out, so that deep trees stay small.
const SMALL_CHUNK = 16
const SMALL_LINKS = 3
const smallSettings = {
  cidVersion: 1,
  rawLeaves: true,
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: SMALL_CHUNK }),
  layout: balanced({ maxChildrenPerNode: SMALL_LINKS })
}
const smallLengths = [0, 1, 15, 16, 17, 32, 48, 49, 64, 144, 145, 160, 432, 433, 1000, 1296, 1297, 4000]

// DAGs laid out differently from p2pdoc's own importer, which the reader must still accept.
const foreign = [
  {
    name: 'dag-pb-leaves-balanced',
    description: 'UnixFS file leaves (not raw), CIDv1, 100-byte chunks, fan-out 3, balanced',
    length: 1000,
    options: {
      cidVersion: 1,
      rawLeaves: false,
      leafType: 'file',
      reduceSingleLeafToSelf: true,
      chunker: fixedSize({ chunkSize: 100 }),
      layout: balanced({ maxChildrenPerNode: 3 })
    }
  },
  {
    name: 'dag-pb-single-leaf',
    description: 'a one-chunk file as a UnixFS node holding its data inline (not raw), CIDv1',
    length: 77,
    options: {
      cidVersion: 1,
      rawLeaves: false,
      leafType: 'file',
      reduceSingleLeafToSelf: true,
      chunker: fixedSize({ chunkSize: 100 })
    }
  },
  {
    name: 'raw-leaves-trickle',
    description: 'raw leaves, CIDv1, 10-byte chunks, trickle layout (fan-out 4, layer repeat 2)',
    length: 997,
    options: {
      cidVersion: 1,
      rawLeaves: true,
      reduceSingleLeafToSelf: true,
      chunker: fixedSize({ chunkSize: 10 }),
      layout: trickle({ maxChildrenPerNode: 4, layerRepeat: 2 })
    }
  },
  {
    name: 'unixfs-raw-leaves',
    description: 'leaves as UnixFS nodes of type Raw (not raw blocks), CIDv1, 50-byte chunks',
    length: 420,
    options: {
      cidVersion: 1,
      rawLeaves: false,
      leafType: 'raw',
      reduceSingleLeafToSelf: false,
      chunker: fixedSize({ chunkSize: 50 }),
      layout: balanced({ maxChildrenPerNode: 4 })
    }
  }
]

async function main () {
  const unixfs = []
  for (const [name, length] of defaultInputs) {
    const seed = `p2pdoc unixfs vector ${name}`
    unixfs.push({ name, seed, length, ...(await importVector(seed, length, defaultSettings)) })
  }

  const small = []
  for (const length of smallLengths) {
    const seed = `p2pdoc small vector ${length}`
    small.push({ seed, length, ...(await importVector(seed, length, smallSettings)) })
  }

  const foreignOut = []
  for (const { name, description, length, options } of foreign) {
    const seed = `p2pdoc foreign vector ${name}`
    foreignOut.push({
      name,
      description,
      seed,
      length,
      ...(await importVector(seed, length, options, { keepBlocks: true }))
    })
  }

  // dag-cbor: a map with text, integers, bytes, a nested list and map, and a CID link.
  const link = CID.parse(unixfs.find((v) => v.name === 'one-byte').root)
  const value = {
    text: 'Công văn số 123/UBND-VP',
    int: 42,
    negative: -1000000,
    big: 18446744073709551615n,
    bytes: new Uint8Array([0, 1, 2, 253, 254, 255]),
    list: [1, 'two', [3, new Uint8Array([4])], { five: 5 }],
    nested: { a: true, b: false, c: null, aa: '' },
    link
  }
  const encoded = dagCbor.encode(value)
  const cborCid = CID.create(1, dagCbor.code, await sha256.digest(encoded))
  const dagCborVector = {
    description: 'value as JSON where bytes are {"$bytes": base64}, CIDs {"$cid": text} and ' +
      'integers outside 2**53 {"$int": decimal text}',
    value: {
      text: value.text,
      int: 42,
      negative: -1000000,
      big: { $int: '18446744073709551615' },
      bytes: { $bytes: Buffer.from(value.bytes).toString('base64') },
      list: [1, 'two', [3, { $bytes: Buffer.from([4]).toString('base64') }], { five: 5 }],
      nested: { a: true, b: false, c: null, aa: '' },
      link: { $cid: link.toString() }
    },
    encoded_hex: Buffer.from(encoded).toString('hex'),
    cid: cborCid.toString()
  }

  const packages = {}
  for (const name of ['ipfs-unixfs-importer', 'ipfs-unixfs', '@ipld/dag-pb', '@ipld/dag-cbor',
    'multiformats', 'cborg']) {
    packages[name] = versionOf(name)
  }

  const fixture = {
    generated_by: 'tests/vectors/make_unixfs_vectors.mjs',
    packages,
    node: process.version,
    generator: { name: GENERATOR, description: GENERATOR_TEXT },
    unixfs: {
      settings: {
        cidVersion: 1,
        rawLeaves: true,
        reduceSingleLeafToSelf: true,
        chunker: `fixed ${CHUNK}`,
        layout: 'balanced',
        maxChildrenPerNode: 174
      },
      vectors: unixfs
    },
    unixfs_small: {
      settings: {
        cidVersion: 1,
        rawLeaves: true,
        reduceSingleLeafToSelf: true,
        chunker: `fixed ${SMALL_CHUNK}`,
        layout: 'balanced',
        maxChildrenPerNode: SMALL_LINKS
      },
      vectors: small
    },
    unixfs_foreign: foreignOut,
    dag_cbor: dagCborVector
  }
  process.stdout.write(JSON.stringify(fixture, null, 1) + '\n')
}

await main()
