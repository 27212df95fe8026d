/**
 * Unpacks a built image into a root file system, as a container runtime would before it starts a container:
 * umoci applies the layers in order (whiteouts included) and keeps their owners and modes.
 */
import {existsSync} from 'node:fs'
import {mkdir, readdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'

import {outputDirectory} from './image.js'
import {run} from './run.js'

/** The parts of an OCI image configuration that decide how a container starts. */
export interface ImageConfig {
  User?: string
  Env?: string[]
  Entrypoint?: string[]
  Cmd?: string[]
  WorkingDir?: string
  Labels?: Record<string, string>
}

export interface UnpackedImage {
  /** The image's root file system. */
  rootfs: string
  config: ImageConfig
  manifestDigest: string
}

interface Descriptor {
  digest: string
  annotations?: Record<string, string>
}

function blobPath(layout: string, digest: string): string {
  const [algorithm, hex] = digest.split(':')
  return path.join(layout, 'blobs', algorithm ?? '', hex ?? '')
}

/** The manifest digest, tag and configuration of the one image an oci-archive holds. */
async function readLayout(layout: string): Promise<{digest: string; tag: string; config: ImageConfig}> {
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as {
    manifests: Descriptor[]
  }
  const [descriptor, ...others] = index.manifests
  if (descriptor === undefined || others.length > 0)
    throw new Error(`the archive holds ${String(index.manifests.length)} images; ksctl's holds one`)
  const tag = descriptor.annotations?.['org.opencontainers.image.ref.name']
  if (tag === undefined) throw new Error('the archive names no tag (org.opencontainers.image.ref.name)')
  const manifest = JSON.parse(await readFile(blobPath(layout, descriptor.digest), 'utf8')) as {
    config: Descriptor
  }
  const image = JSON.parse(await readFile(blobPath(layout, manifest.config.digest), 'utf8')) as {
    config?: ImageConfig
  }
  return {digest: descriptor.digest, tag, config: image.config ?? {}}
}

/** Unpacks `archive` into `directory` (which must not exist): `directory/rootfs` and `directory/image.json`. */
export async function unpackImage(archive: string, directory: string): Promise<UnpackedImage> {
  const layout = `${directory}.layout`
  await rm(layout, {recursive: true, force: true})
  await mkdir(layout, {recursive: true})
  try {
    await run('tar', ['--extract', '--file', archive, '--directory', layout])
    const {digest, tag, config} = await readLayout(layout)
    await run('umoci', ['unpack', '--image', `${layout}:${tag}`, directory])
    const unpacked = {rootfs: path.join(directory, 'rootfs'), config, manifestDigest: digest}
    await writeFile(path.join(directory, 'image.json'), JSON.stringify(unpacked, undefined, 2))
    return unpacked
  } finally {
    await rm(layout, {recursive: true, force: true})
  }
}

/** The image unpacked earlier into `directory` by {@link unpackImage}. */
export async function readUnpackedImage(directory: string): Promise<UnpackedImage> {
  return JSON.parse(await readFile(path.join(directory, 'image.json'), 'utf8')) as UnpackedImage
}

/**
 * The archive unpacked under `out/unpacked/<manifest digest>`, reused while the archive holds the same image;
 * unpacked copies of other images are removed (each is some 180 MB).
 */
export async function unpackCached(
  archive: string,
  root = path.join(outputDirectory, 'unpacked'),
): Promise<UnpackedImage> {
  const layout = path.join(root, 'index-probe')
  await rm(layout, {recursive: true, force: true})
  await mkdir(layout, {recursive: true})
  let digest: string
  try {
    await run('tar', ['--extract', '--file', archive, '--directory', layout, 'index.json'])
    const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as {
      manifests: Descriptor[]
    }
    digest = index.manifests[0]?.digest ?? ''
  } finally {
    await rm(layout, {recursive: true, force: true})
  }
  const directory = path.join(root, digest.replace(':', '-'))
  if (existsSync(path.join(directory, 'image.json'))) return readUnpackedImage(directory)
  for (const entry of await readdir(root)) await rm(path.join(root, entry), {recursive: true, force: true})
  const partial = `${directory}.partial`
  await unpackImage(archive, partial)
  const unpacked = {...(await readUnpackedImage(partial)), rootfs: path.join(directory, 'rootfs')}
  await writeFile(path.join(partial, 'image.json'), JSON.stringify(unpacked, undefined, 2))
  await rename(partial, directory)
  return unpacked
}
