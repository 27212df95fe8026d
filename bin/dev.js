#!/usr/bin/env -S node --import tsx --no-warnings
import {exitUnlessSupportedNode} from './node-version.js'

exitUnlessSupportedNode()
// Loaded only now: on an older Node.js, oclif and ksctl's dependencies fail while they load.
const {execute} = await import('@oclif/core')
await execute({development: true, dir: import.meta.url})
