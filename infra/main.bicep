// azureml-dsr: everything the product needs, in one subscription-scoped deployment.
//   azd up                         (azure.yaml at the repo root)
//   az deployment sub create ...   (see docs/deploy.md)
// Creates one resource group with the app, its storage, Service Bus, monitoring and Event
// Grid, and grants the app identity least-privilege access to each Azure ML workspace in
// scope (cross-resource-group / cross-subscription modules).
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; part of every resource name.')
param environmentName string

@minLength(1)
@description('Azure region for all regional resources (must offer Flex Consumption).')
param location string

@minLength(2)
@maxLength(10)
@description('Short lowercase prefix for resource names.')
param namePrefix string = 'dsr'

@description('Resource group to create/use. Empty = rg-<namePrefix>-<environmentName>.')
param resourceGroupName string = ''

@description('Azure ML workspaces in scope: [{ workspaceId, storageAccountId, logAnalyticsWorkspaceId?, telemetryPurgeEnabled? }]. Ids are full ARM resource ids.')
param workspaces array = []

@description('NCRONTAB (6 fields, UTC) for the retention-sweep timer.')
param retentionSweepSchedule string = '0 30 2 * * *'

@description('Job-history retention: when true, the nightly sweep deletes EVERY user\'s jobs (and their files) older than jobRetentionDays in every workspace in scope. Off by default; the first sweep after enabling only reports (dry run). DSR_JOB_RETENTION_ENABLED.')
param jobRetentionEnabled bool = false

@minValue(1)
@maxValue(3650)
@description('A finished request\'s working state (plan, inventories, chunks) and the raw intake archive are removed after this many days; reports, certificates and audit records stay. DSR_STATE_RETENTION_DAYS.')
param stateRetentionDays int = 90

@minValue(30)
@description('Job history older than this many days is deleted by the sweep when jobRetentionEnabled (at least 30; a workspace tag dsr-retention-days may lengthen it, never shorten it). DSR_JOB_RETENTION_DAYS.')
param jobRetentionDays int = 365

@minValue(1)
@maxValue(365)
@description('Export link lifetime in days; the dsr-exports lifecycle rule deletes bundles after it.')
param exportLinkDays int = 7

@minValue(1)
@description('Time-based immutability of dsr-audit in days (730 = CCPA 24 months).')
param auditRetentionDays int = 730

@description('Allow the telemetry slice to purge Log Analytics data (grants Data Purger where a workspace has logAnalyticsWorkspaceId and does not set telemetryPurgeEnabled=false).')
param telemetryPurgeEnabled bool = false

@secure()
// checkov:skip=CKV_AZURE_131: the default is newGuid(), a fresh random value per deployment, not a hard-coded secret; see infra/CHECKOV.md
@description('Salt of the subject hashes in logs (DSR_LOG_SALT). Default: a new random value each deployment, so hashes in logs do not link across deployments; give a value to keep them stable.')
param logSalt string = newGuid()

@description('Allow purging soft-deleted workspaces (adds workspaces/delete to the per-workspace custom role).')
param allowWorkspacePurge bool = false

@minValue(1)
param intakeMaxDeliveryCount int = 5

@minValue(1)
param sliceMaxDeliveryCount int = 10

@description('\'true\' = create the Event Grid subscription to the workspace-deleted function. Needs the function code deployed first (see docs/deploy.md). A string so that azd can fill it from an environment variable.')
@allowed([
  'true'
  'false'
])
param eventGridSubscriptionEnabled string = 'false'

@description('Reuse an existing Microsoft.Resources.Subscriptions system topic in the app resource group (only one per subscription is allowed). Empty = create.')
param existingSystemTopicName string = ''

@description('Optional principal (object) id of the ticketing system: Data Sender on dsr-intake, Data Receiver on dsr-results/ticketing.')
param ticketingPrincipalId string = ''

@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param ticketingPrincipalType string = 'ServicePrincipal'

@description('Grant Service Bus Data Owner on trigger queues (only if scale monitoring needs it; see docs/deploy.md).')
param grantServiceBusScaleMonitorOwner bool = false

var tags = {
  'azd-env-name': environmentName
  application: 'azureml-dsr'
}
var suffix = uniqueString(subscription().id, environmentName, location)
var rgName = empty(resourceGroupName) ? 'rg-${namePrefix}-${environmentName}' : resourceGroupName
var deploymentContainerName = 'app-package-${take(suffix, 8)}'

// Distinct subscriptions holding workspaces (operation-status role, once per subscription).
var workspaceSubscriptionsAll = [for w in workspaces: split(w.workspaceId, '/')[2]]
var workspaceSubscriptions = union(workspaceSubscriptionsAll, [])

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${namePrefix}-${suffix}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${namePrefix}-${suffix}'
    appInsightsName: 'appi-${namePrefix}-${suffix}'
    location: location
    tags: tags
    publisherPrincipalId: identity.outputs.principalId
  }
}

module hostStorage 'modules/storage-host.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: take('st${namePrefix}h${suffix}', 24)
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    appPrincipalId: identity.outputs.principalId
  }
}

module stateStorage 'modules/storage-state.bicep' = {
  name: 'state-storage'
  scope: rg
  params: {
    name: take('st${namePrefix}s${suffix}', 24)
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    exportLinkDays: exportLinkDays
    auditRetentionDays: auditRetentionDays
    stateRetentionDays: stateRetentionDays
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-${namePrefix}-${suffix}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    intakeMaxDeliveryCount: intakeMaxDeliveryCount
    sliceMaxDeliveryCount: sliceMaxDeliveryCount
    ticketingPrincipalId: ticketingPrincipalId
    ticketingPrincipalType: ticketingPrincipalType
    grantScaleMonitorOwner: grantServiceBusScaleMonitorOwner
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    planName: 'plan-${namePrefix}-${suffix}'
    appName: 'func-${namePrefix}-${suffix}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageName: hostStorage.outputs.name
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    serviceBusFqdn: serviceBus.outputs.fullyQualifiedNamespace
    stateBlobEndpoint: stateStorage.outputs.blobEndpoint
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    logSalt: logSalt
    retentionSweepSchedule: retentionSweepSchedule
    jobRetentionEnabled: jobRetentionEnabled
    jobRetentionDays: jobRetentionDays
    stateRetentionDays: stateRetentionDays
    telemetryPurgeEnabled: telemetryPurgeEnabled
    exportLinkDays: exportLinkDays
    maxDeliveryCount: sliceMaxDeliveryCount
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    tags: tags
    systemTopicName: 'evgt-${namePrefix}-${suffix}'
    existingSystemTopicName: existingSystemTopicName
    functionAppId: functionApp.outputs.id
    stateAccountId: stateStorage.outputs.id
    deadLetterContainerName: stateStorage.outputs.deadLetterContainerName
    createEventSubscription: eventGridSubscriptionEnabled == 'true'
  }
}

// ---- Access to the Azure ML workspaces in scope (each in its own RG / subscription) ----
module workspaceAccess 'modules/workspace-access.bicep' = [for (w, i) in workspaces: {
  name: 'dsr-ws-${i}-${take(uniqueString(w.workspaceId), 6)}'
  scope: resourceGroup(split(w.workspaceId, '/')[2], split(w.workspaceId, '/')[4])
  params: {
    workspaceName: last(split(w.workspaceId, '/'))
    principalId: identity.outputs.principalId
    allowWorkspacePurge: allowWorkspacePurge
  }
}]

module workspaceStorageAccess 'modules/workspace-storage-access.bicep' = [for (w, i) in workspaces: {
  name: 'dsr-wsst-${i}-${take(uniqueString(w.storageAccountId), 6)}'
  scope: resourceGroup(split(w.storageAccountId, '/')[2], split(w.storageAccountId, '/')[4])
  params: {
    storageAccountName: last(split(w.storageAccountId, '/'))
    principalId: identity.outputs.principalId
  }
}]

module telemetryAccess 'modules/telemetry-access.bicep' = [for (w, i) in workspaces: if (contains(w, 'logAnalyticsWorkspaceId') && !empty(w.logAnalyticsWorkspaceId)) {
  name: 'dsr-law-${i}-${take(uniqueString(w.workspaceId), 6)}'
  scope: resourceGroup(split(contains(w, 'logAnalyticsWorkspaceId') && !empty(w.logAnalyticsWorkspaceId) ? w.logAnalyticsWorkspaceId : w.workspaceId, '/')[2], split(contains(w, 'logAnalyticsWorkspaceId') && !empty(w.logAnalyticsWorkspaceId) ? w.logAnalyticsWorkspaceId : w.workspaceId, '/')[4])
  params: {
    logAnalyticsName: last(split(contains(w, 'logAnalyticsWorkspaceId') && !empty(w.logAnalyticsWorkspaceId) ? w.logAnalyticsWorkspaceId : w.workspaceId, '/'))
    principalId: identity.outputs.principalId
    purgeEnabled: telemetryPurgeEnabled && (contains(w, 'telemetryPurgeEnabled') ? bool(w.telemetryPurgeEnabled) : true)
  }
}]

module operationStatus 'modules/aml-operation-status.bicep' = [for s in workspaceSubscriptions: {
  name: 'dsr-amlops-${take(uniqueString(s, environmentName), 8)}'
  scope: subscription(s)
  params: {
    principalId: identity.outputs.principalId
  }
}]

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output DSR_SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output DSR_STATE_ACCOUNT_URL string = stateStorage.outputs.blobEndpoint
output DSR_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output DSR_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output DSR_EVENTGRID_SYSTEM_TOPIC string = eventGrid.outputs.systemTopicName
