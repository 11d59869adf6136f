// Service Bus namespace, queues, results topic and entity-scoped role assignments.
//
// Why each queue setting:
// - requiresDuplicateDetection + duplicateDetectionHistoryTimeWindow P1D: the handler sends
//   with MessageId = a deterministic id (requestId, requestId/slice/workspace, ...). A ticketing
//   system that retries a send, or a handler that crashes after sending but before completing
//   its own input, then produces no duplicate work within a day. (Duplicate detection can only
//   be chosen at queue creation; changing it later means re-creating the queue.)
// - maxDeliveryCount: how many processing attempts before Service Bus dead-letters a message
//   (MaxDeliveryCountExceeded). Intake 5: validation/enqueue is cheap and deterministic, a
//   message that fails 5 times is malformed or hits a persistent fault and must go to a human
//   quickly. Slices 10: they call ARM / storage / Log Analytics, where throttling (429) and
//   transient faults are expected. Completions 10: the aggregator must not lose a slice result.
// - deadLetteringOnMessageExpiration: an expired DSR message must land in the DLQ, never vanish
//   silently (a lost request is a missed legal deadline).
// - defaultMessageTimeToLive P14D: far below the one-month GDPR deadline, so an unprocessed
//   request surfaces in the DLQ while there is still time to act on it.
// - lockDuration PT5M (the maximum): slices can take minutes (LRO deletes); together with
//   host.json maxAutoLockRenewalDuration 00:05:00 this avoids lock loss and double processing.
// - requiresSession false: custom handlers cannot set SessionId on output bindings.
param name string
param location string
param tags object
@description('Principal id of the function app identity.')
param appPrincipalId string
@minValue(1)
param intakeMaxDeliveryCount int = 5
@minValue(1)
param sliceMaxDeliveryCount int = 10
@minValue(1)
param completionsMaxDeliveryCount int = 10
@description('Optional principal id of the ticketing system (Data Sender on dsr-intake, Data Receiver on the ticketing subscription). Empty = none.')
param ticketingPrincipalId string = ''
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param ticketingPrincipalType string = 'ServicePrincipal'
@description('Also grant Azure Service Bus Data Owner on each TRIGGER queue (for scale monitoring that reads queue runtime properties). Off by default: Data Receiver is the documented minimum for the trigger.')
param grantScaleMonitorOwner bool = false

var sliceTypes = [
  'jobs'
  'models'
  'data'
  'compute'
  'notebooks'
  'telemetry'
]
var sliceQueues = [for t in sliceTypes: 'dsr-slice-${t}']

var sbDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var sbDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var sbDataOwner = '090c5cfd-751d-490a-894a-3ce6f1109419'

resource ns 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    // Standard: topics + duplicate detection. Premium would add private endpoints and CMK.
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    // Entra ID only: SAS keys cannot be used against this namespace.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource intake 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: ns
  name: 'dsr-intake'
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    maxDeliveryCount: intakeMaxDeliveryCount
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    lockDuration: 'PT5M'
    requiresSession: false
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}

resource slices 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for q in sliceQueues: {
  parent: ns
  name: q
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    maxDeliveryCount: sliceMaxDeliveryCount
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    lockDuration: 'PT5M'
    requiresSession: false
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}]

resource completions 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: ns
  name: 'dsr-completions'
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    maxDeliveryCount: completionsMaxDeliveryCount
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    lockDuration: 'PT5M'
    requiresSession: false
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}

// Results for the ticketing system. A topic (not a queue) so that more consumers (e.g. an
// archive or a dashboard) can subscribe later without touching the producer.
resource results 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: ns
  name: 'dsr-results'
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    defaultMessageTimeToLive: 'P14D'
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}

resource ticketing 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: results
  name: 'ticketing'
  properties: {
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    defaultMessageTimeToLive: 'P14D'
    lockDuration: 'PT1M'
    requiresSession: false
  }
}

// ---- Role assignments, scoped to the individual queue/topic (never the namespace) ----
// Receiver on every queue the app is triggered by.
resource rxIntake 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(intake.id, appPrincipalId, sbDataReceiver)
  scope: intake
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataReceiver)
  }
}

resource rxSlices 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (q, i) in sliceQueues: {
  name: guid(slices[i].id, appPrincipalId, sbDataReceiver)
  scope: slices[i]
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataReceiver)
  }
}]

resource rxCompletions 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(completions.id, appPrincipalId, sbDataReceiver)
  scope: completions
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataReceiver)
  }
}

// Sender: intake fans out to the slice queues, slices report to dsr-completions, the
// aggregator publishes to dsr-results. The app never sends to dsr-intake.
resource txSlices 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (q, i) in sliceQueues: {
  name: guid(slices[i].id, appPrincipalId, sbDataSender)
  scope: slices[i]
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataSender)
  }
}]

resource txCompletions 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(completions.id, appPrincipalId, sbDataSender)
  scope: completions
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataSender)
  }
}

resource txResults 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(results.id, appPrincipalId, sbDataSender)
  scope: results
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataSender)
  }
}

// Optional: Data Owner on trigger queues, only if scale monitoring proves to need it.
resource ownIntake 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantScaleMonitorOwner) {
  name: guid(intake.id, appPrincipalId, sbDataOwner)
  scope: intake
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataOwner)
  }
}

resource ownSlices 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (q, i) in sliceQueues: if (grantScaleMonitorOwner) {
  name: guid(slices[i].id, appPrincipalId, sbDataOwner)
  scope: slices[i]
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataOwner)
  }
}]

resource ownCompletions 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantScaleMonitorOwner) {
  name: guid(completions.id, appPrincipalId, sbDataOwner)
  scope: completions
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataOwner)
  }
}

// Ticketing system: may only send requests and read results.
resource ticketingSend 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(ticketingPrincipalId)) {
  name: guid(intake.id, ticketingPrincipalId, sbDataSender)
  scope: intake
  properties: {
    principalId: ticketingPrincipalId
    principalType: ticketingPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataSender)
  }
}

resource ticketingReceive 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(ticketingPrincipalId)) {
  name: guid(ticketing.id, ticketingPrincipalId, sbDataReceiver)
  scope: ticketing
  properties: {
    principalId: ticketingPrincipalId
    principalType: ticketingPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sbDataReceiver)
  }
}

output id string = ns.id
output name string = ns.name
output fullyQualifiedNamespace string = '${ns.name}.servicebus.windows.net'
