// The policy module: the parser refuses bad files naming the problem, the evaluator's selectors and ports, the
// deciding rule, allowed ports per direction, "connected", and the port-list text the NMS hands to nodes.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ALLOW_ALL,
  allowedPorts,
  connected,
  decide,
  parseFlow,
  parsePolicy,
  parsePort,
  parsePortList,
  PolicyError,
  type Subject,
} from '../../../src/policy/policy.js';

const ISSUE_EXAMPLE = '{"allow": [{"from": ["tag:ops", "alpha"], "to": ["tag:cam"], "ports": ["icmp", "tcp:22", "tcp:8000-8100", "udp:*"]}]}';
const ops: Subject = { name: 'opsbox', tags: ['ops'] };
const alpha: Subject = { name: 'alpha', tags: [] };
const cam: Subject = { name: 'cam1', tags: ['cam', 'video'] };
const plain: Subject = { name: 'plain', tags: [] };

describe('policy parser', () => {
  test('the issue example parses', () => {
    const p = parsePolicy(ISSUE_EXAMPLE);
    assert.equal(p.allow.length, 1);
    assert.deepEqual(p.allow[0]!.ports, ['icmp', 'tcp:22', 'tcp:8000-8100', 'udp:*']);
  });

  const bad: [string, RegExp][] = [
    ['not json', /not valid JSON/],
    ['[]', /must be a JSON object/],
    ['{}', /missing "allow"/],
    ['{"allow": {}}', /"allow" must be a list/],
    ['{"allow": [], "deny": []}', /unknown key "deny"/],
    ['{"allow": [{"from": ["*"], "to": ["*"]}]}', /allow\[0\]: missing "ports"/],
    ['{"allow": [{"from": ["*"], "to": ["*"], "ports": ["*"], "log": true}]}', /allow\[0\]: unknown key "log"/],
    ['{"allow": [{"from": [], "to": ["*"], "ports": ["*"]}]}', /allow\[0\]\.from: must not be empty/],
    ['{"allow": [{"from": ["tag:"], "to": ["*"], "ports": ["*"]}]}', /allow\[0\]\.from\[0\]: "tag:" is not a valid tag/],
    ['{"allow": [{"from": ["Bad Name"], "to": ["*"], "ports": ["*"]}]}', /allow\[0\]\.from\[0\]: "Bad Name" is not a node name/],
    ['{"allow": [{"from": ["*"], "to": [7], "ports": ["*"]}]}', /allow\[0\]\.to\[0\]: must be a string/],
    ['{"allow": [{"from": ["*"], "to": ["*"], "ports": ["tcp:70000"]}]}', /allow\[0\]\.ports\[0\]: "70000" is not a port/],
    ['{"allow": [{"from": ["*"], "to": ["*"], "ports": ["tcp:9-1"]}]}', /runs backwards/],
    ['{"allow": [{"from": ["*"], "to": ["*"], "ports": ["sctp:1"]}]}', /"sctp:1" is not a port/],
    ['{"allow": [{"from": ["*"], "to": ["*"], "ports": ["tcp:"]}]}', /is not a port number/],
    ['{"allow": [{"from": ["*"], "to": ["*"], "ports": ["tcp:1-"]}]}', /is not a port number/],
    ['{"allow": [null]}', /allow\[0\]: a rule must be an object/],
  ];
  for (const [text, why] of bad) {
    test(`refuses ${text}`, () => {
      assert.throws(() => parsePolicy(text), (e: unknown) => e instanceof PolicyError && e.code === 'ERR_POLICY' && why.test(e.message));
    });
  }

  test('ports', () => {
    assert.deepEqual(parsePort('*'), { proto: 'any', lo: 0, hi: 65535 });
    assert.deepEqual(parsePort('tcp:8000-8100'), { proto: 'tcp', lo: 8000, hi: 8100 });
    assert.deepEqual(parsePort('udp:*'), { proto: 'udp', lo: 0, hi: 65535 });
    assert.deepEqual(parsePort('udp:53'), { proto: 'udp', lo: 53, hi: 53 });
    assert.deepEqual(parsePortList(''), []);
    assert.equal(parsePortList('icmp,tcp:22').length, 2);
    assert.throws(() => parsePortList('icmp,,tcp:22'), PolicyError);
  });
});

describe('policy evaluator', () => {
  const p = parsePolicy(ISSUE_EXAMPLE);

  test('tags and names select, the first allowing rule decides', () => {
    assert.deepEqual(decide(p, ops, cam, parseFlow('tcp:22')), { allowed: true, rule: 0, port: 'tcp:22' });
    assert.deepEqual(decide(p, alpha, cam, parseFlow('tcp:8050')), { allowed: true, rule: 0, port: 'tcp:8000-8100' });
    assert.equal(decide(p, ops, cam, parseFlow('udp:5353')).port, 'udp:*');
    assert.equal(decide(p, ops, cam, parseFlow('icmp')).allowed, true);
    assert.deepEqual(decide(p, ops, cam, parseFlow('tcp:23')), { allowed: false, rule: null, port: null });
    assert.equal(decide(p, cam, ops, parseFlow('tcp:22')).allowed, false, 'rules have a direction');
    assert.equal(decide(p, plain, cam, parseFlow('icmp')).allowed, false);
    assert.equal(decide(p, ops, plain, parseFlow('icmp')).allowed, false);
  });

  test('a fresh cloud allows everything; an empty policy nothing', () => {
    assert.equal(decide(ALLOW_ALL, plain, cam, parseFlow('udp:1')).allowed, true);
    assert.deepEqual(allowedPorts(ALLOW_ALL, plain, cam), ['*']);
    const none = parsePolicy('{"allow": []}');
    assert.equal(connected(none, plain, cam), false);
    assert.deepEqual(allowedPorts(none, plain, cam), []);
  });

  test('allowed ports per direction, and connected either way', () => {
    const two = parsePolicy('{"allow": [{"from": ["tag:ops"], "to": ["tag:cam"], "ports": ["icmp", "tcp:22"]}, {"from": ["*"], "to": ["tag:video"], "ports": ["tcp:22", "udp:554"]}]}');
    assert.deepEqual(allowedPorts(two, ops, cam), ['icmp', 'tcp:22', 'udp:554']);
    assert.deepEqual(allowedPorts(two, cam, ops), []);
    assert.equal(connected(two, ops, cam), true);
    assert.equal(connected(two, cam, ops), true, 'either direction connects');
    assert.equal(connected(two, plain, ops), false);
    assert.equal(connected(two, plain, cam), true, '"*" to tag:video');
  });

  test('flows to check', () => {
    assert.deepEqual(parseFlow('tcp:22'), { proto: 'tcp', port: 22 });
    assert.throws(() => parseFlow('tcp:*'), PolicyError);
    assert.throws(() => parseFlow('tcp:99999'), PolicyError);
  });
});
